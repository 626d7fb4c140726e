import sys

from zavhoz.cli import main

sys.exit(main())
