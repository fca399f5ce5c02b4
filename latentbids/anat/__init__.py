"""latentbids.anat"""
