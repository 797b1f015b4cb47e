from passtplan.cli import main

main()
