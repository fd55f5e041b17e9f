import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported; see app.py

from gemma_demo.cli.main import main  # noqa: E402

sys.exit(main())
