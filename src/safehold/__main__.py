from safehold.cli.main import main

if __name__ == "__main__":  # not when a drill's child process (spawn) imports it
    main()
