"""noisecraft.interop"""
