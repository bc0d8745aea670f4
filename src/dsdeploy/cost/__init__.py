"""What running a model costs: bought hardware, rented GPUs and APIs on the same month."""
