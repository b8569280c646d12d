from artrain.cli import main
main()
