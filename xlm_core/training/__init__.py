"""Training machinery shared by every family: the Lightning harness, optimizer and schedule, precision,
the reported metrics, training callbacks and loggers, and the runtime objects a job builds."""
