from imagebuild.cli.main import main

main()
