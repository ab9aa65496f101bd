"""The one-call path: analyze_call runs the stages on one recording; its tables and exports."""
