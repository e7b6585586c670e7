from metabench.cli import main

main()
