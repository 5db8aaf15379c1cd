from safehold.cli.main import main

main()
