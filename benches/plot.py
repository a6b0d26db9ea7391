"""Speed-up chart of a benchmark table (`llmint8.tools.plots`), run from the repository:

python benches/plot.py benches/results-h100.md benches/results-h100.png
"""

from llmint8.tools.plots import main

if __name__ == "__main__":
    main()
