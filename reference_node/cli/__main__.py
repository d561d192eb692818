import sys

from reference_node.cli import main

sys.exit(main())
