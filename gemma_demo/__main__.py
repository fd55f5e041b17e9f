import sys

from gemma_demo.cli import main

sys.exit(main())
