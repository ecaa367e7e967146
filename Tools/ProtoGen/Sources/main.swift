print("ProtoGen: run scripts/generate-proto.sh")
