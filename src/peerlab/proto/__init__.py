"""Sans-I/O state machines, one per connection type."""
