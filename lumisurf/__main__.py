import sys

from lumisurf.cli import main

sys.exit(main())
