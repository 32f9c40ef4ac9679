"""LED call boards, window strips and voice calls."""
