from connbench.cli import main

main()
