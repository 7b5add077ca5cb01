"""Friend requests and the friendships they become."""
