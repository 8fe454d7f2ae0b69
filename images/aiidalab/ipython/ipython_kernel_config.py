"""System-wide IPython kernel settings of the aiidalab image (/etc/ipython): every kernel runs
aiida_first_start.py, so its first cell waits while the start hook still prepares AiiDA."""

c = get_config()  # noqa: F821 (provided by the config loader)
c.InteractiveShellApp.exec_files.append("/etc/ipython/aiida_first_start.py")
