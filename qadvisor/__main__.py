from qadvisor.cli import main

raise SystemExit(main())
