import sys

from harvester.cli import main

if __name__ == "__main__":  # sentiment workers are spawned and must not run the CLI again
    sys.exit(main())
