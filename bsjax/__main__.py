from bsjax.cli import main

raise SystemExit(main())
