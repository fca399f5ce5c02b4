"""latentbids.model"""
