from modelyard.cli import run

run()
