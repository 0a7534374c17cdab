"""Graph passes and the explicit pipeline that runs them."""
