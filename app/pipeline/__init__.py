"""The built-in pipeline: pure logic here (validate, status, flap, aggregate, config); the agents that
run it on the stream runtime live beside it and import this, never the other way round."""
