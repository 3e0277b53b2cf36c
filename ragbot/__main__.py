import sys

from ragbot.interfaces.cli import main

sys.exit(main())
