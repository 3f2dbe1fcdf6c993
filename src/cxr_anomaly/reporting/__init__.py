"""Writing results: JSON and CSV files, figures and the HTML report."""
