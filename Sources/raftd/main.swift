print("raftd")
