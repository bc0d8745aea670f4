from dsdeploy.cli import main

main()
