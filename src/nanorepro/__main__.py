from nanorepro.cli import main

main()
