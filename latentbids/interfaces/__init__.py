"""latentbids.interfaces"""
