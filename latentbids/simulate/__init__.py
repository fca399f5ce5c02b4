"""latentbids.simulate"""
