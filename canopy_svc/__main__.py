from canopy_svc.cli import main

raise SystemExit(main())
