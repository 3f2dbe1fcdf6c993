"""``python -m cxr_anomaly`` runs the command-line interface."""

from cxr_anomaly.cli import main

raise SystemExit(main())
