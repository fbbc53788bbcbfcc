// The fields of the Kubernetes objects that `tsmesh check` reads (the API's
// objects as JSON, only what the checks look at).

export interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  ownerReferences?: { kind: string; name: string }[];
}
export interface Obj {
  metadata?: Meta;
}
export interface List<T> {
  items?: T[];
}
export interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
}
export interface Deployment extends Obj {
  spec?: { replicas?: number; template?: { spec?: { containers?: Container[] } } };
  status?: { replicas?: number; availableReplicas?: number; readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number };
}
export interface ContainerStatus {
  name: string;
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number } };
}
export interface Pod extends Obj {
  spec?: { hostNetwork?: boolean; initContainers?: Container[]; containers?: Container[] };
  status?: { phase?: string; podIP?: string; initContainerStatuses?: ContainerStatus[]; containerStatuses?: ContainerStatus[] };
}
export interface Webhook {
  name: string;
  failurePolicy?: string;
  clientConfig?: { caBundle?: string; service?: { name?: string; namespace?: string; port?: number; path?: string }; url?: string };
}
