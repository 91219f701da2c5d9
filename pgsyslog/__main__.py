from pgsyslog.cli import main

main()
