from coinpredict.cli.app import main

main()
