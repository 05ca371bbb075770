"""Import and export of formats other tools use: the adapters library, PEFT, the archived AdapterHub index."""
