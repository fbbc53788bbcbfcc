import type { MeshModel } from '../model.js';

/** Where the control plane learns the mesh: Kubernetes, or a local file. */
export interface MeshSource {
  current(): MeshModel | undefined;
  /** Called with every new model; returns an unsubscribe function. */
  onChange(listener: (model: MeshModel) => void): () => void;
  close(): void;
}
