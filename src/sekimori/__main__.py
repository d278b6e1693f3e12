from sekimori.cli.main import main

raise SystemExit(main())
