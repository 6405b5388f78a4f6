import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import type * as grpc from "@grpc/grpc-js";

/**
 * Server reflection (v1 and v1alpha) fed with the protobuf-es descriptors: each
 * served file and its transitive imports, serialized as FileDescriptorProtos. Loading
 * the .proto files through proto-loader instead gives descriptors that Go clients
 * (buf curl, grpcurl) reject (TOOLCHAIN.md).
 */
export function addReflection(server: grpc.Server, files: readonly DescFile[]): void {
  const seen = new Map<string, Buffer>();
  const visit = (file: DescFile) => {
    if (seen.has(file.proto.name)) return;
    seen.set(file.proto.name, Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
    file.dependencies.forEach(visit);
  };
  files.forEach(visit);
  const fileDescriptorProtos = [...seen.values()];
  // The shape @grpc/reflection reads from a proto-loader PackageDefinition.
  const packageDefinition = { reflected: { fileDescriptorProtos } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  new ReflectionService(packageDefinition).addToServer(server);
}
