"""The queue contract: wire models, the Store protocol, its rules and its bindings."""
