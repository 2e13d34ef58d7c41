"""The front end: the ``alphatriangle`` command line, its progress view, evaluation reports
and board rendering."""
