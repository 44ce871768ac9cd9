"""noisecraft.data"""
