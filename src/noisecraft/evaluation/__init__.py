"""noisecraft.evaluation"""
