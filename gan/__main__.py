from gan.cli import main

main()
