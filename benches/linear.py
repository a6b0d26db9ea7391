"""The layer benchmark (`llmint8 bench`, in `llmint8.tools.bench`), run from the repository:

python benches/linear.py [--quick] [--device cuda:0] [--out results.md] [--plot chart.png]
"""

from llmint8.tools.bench import main

if __name__ == "__main__":
    main()
