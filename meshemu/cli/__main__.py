import sys

from meshemu.cli.main import main

sys.exit(main())
