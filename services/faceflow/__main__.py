"""``python -m faceflow`` is the ``faceflow`` command."""

from faceflow.cli import main

raise SystemExit(main())
