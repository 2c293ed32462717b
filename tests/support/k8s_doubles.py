"""Test doubles for the Kubernetes backend (no cluster can be installed here).

DockerClusterApi  plays the kubelet: runs a Pod manifest's init and main containers in Docker
                  (emptyDirs as Docker volumes at the manifest's paths, host network).
FakeApiServer     just enough of the Kubernetes REST API (pods in one namespace, /version)
                  to drive KubeClusterApi through the official client; it records every
                  request, so a test can assert what was (not) asked and in which order.
write_kubeconfig  a kubeconfig file pointing at a server, as kubectl would read it.
"""
from __future__ import annotations

import threading
import time

from localrunner.backends.kubernetes.api import MAIN_CONTAINER, ClusterApi, PodStatus


class DockerClusterApi(ClusterApi):
    """Runs a Pod manifest in Docker the way a kubelet would, for what the backend relies
    on: init containers in order, then the main container; every emptyDir a Docker volume
    mounted where the manifest says (readOnly honoured); env values, secretKeyRef from
    `secrets`, fieldRef metadata.name; host network. Other volume kinds are refused."""

    def __init__(self, client, secrets: dict | None = None):
        self.client = client
        self.secrets = secrets or {}
        self.manifests: dict[str, dict] = {}
        self._status: dict[str, PodStatus] = {}
        self._containers: dict[str, list] = {}
        self._main_started: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def create_pod(self, manifest: dict) -> None:
        name = manifest['metadata']['name']
        with self._lock:
            if name in self.manifests:
                raise RuntimeError(f'pod {name} already exists')
            self.manifests[name] = manifest
            self._status[name] = PodStatus('Pending')
            self._containers[name] = []
            self._main_started[name] = threading.Event()
        threading.Thread(target=self._run, args=(name, manifest), daemon=True).start()

    def _set(self, name: str, status: PodStatus) -> None:
        with self._lock:
            if self._status.get(name, PodStatus('Gone')).phase != 'Gone':
                self._status[name] = status

    def _run(self, name: str, manifest: dict) -> None:
        try:
            spec = manifest['spec']
            volumes = {}
            for vol in spec.get('volumes', []):
                if 'emptyDir' not in vol:
                    raise ValueError(f'DockerClusterApi: volume kind of {vol} not supported')
                volumes[vol['name']] = self.client.volumes.create(
                    name=f'{name}-{vol["name"]}', labels={'localrunner.test-pod': name}).name
            for init in spec.get('initContainers', []):
                code = self._container(name, manifest, init, volumes).wait()['StatusCode']
                if code != 0:
                    self._set(name, PodStatus('Failed', code, f'init container {init["name"]}: Error'))
                    return
            main = spec['containers'][0]
            container = self._container(name, manifest, main, volumes)
            image_id = self.client.images.get(main['image']).id
            self._set(name, PodStatus('Running', image_id=image_id))
            self._main_started[name].set()
            code = container.wait()['StatusCode']
            self._set(name, PodStatus('Succeeded' if code == 0 else 'Failed', code,
                                      'Completed' if code == 0 else 'Error', image_id))
        except Exception as exc:   # a deleted pod's containers vanish mid-wait
            self._set(name, PodStatus('Failed', None, f'DockerClusterApi: {exc}'))
        finally:
            self._main_started[name].set()

    def _container(self, name: str, manifest: dict, c: dict, volumes: dict):
        import docker
        env = {}
        for item in c.get('env', []):
            if 'value' in item:
                env[item['name']] = item['value']
            elif 'secretKeyRef' in item['valueFrom']:
                ref = item['valueFrom']['secretKeyRef']
                env[item['name']] = self.secrets[ref['name']][ref['key']]
            elif 'fieldRef' in item['valueFrom']:
                env[item['name']] = {'metadata.name': name}[item['valueFrom']['fieldRef']['fieldPath']]
        mounts = [docker.types.Mount(m['mountPath'], volumes[m['name']], type='volume',
                                     read_only=bool(m.get('readOnly')))
                  for m in c.get('volumeMounts', [])]
        with self._lock:
            if self._status[name].phase == 'Gone':
                raise RuntimeError('pod deleted')
            container = self.client.containers.run(
                c['image'], entrypoint=c['command'][:1], command=c['command'][1:] + c.get('args', []),
                environment=env, mounts=mounts, working_dir=c.get('workingDir'), network_mode='host',
                labels={'localrunner.test-pod': name}, name=f'{name}-{c["name"]}', detach=True)
            self._containers[name].append(container)
        return container

    def pod_phase(self, name: str) -> PodStatus:
        with self._lock:
            return self._status.get(name, PodStatus('Gone'))

    def stream_logs(self, name: str):
        self._main_started[name].wait()
        with self._lock:
            containers = [c for c in self._containers[name] if c.name.endswith('-' + MAIN_CONTAINER)]
        if not containers:
            return
        buf = b''
        for chunk in containers[0].logs(stream=True, follow=True):
            buf += chunk
            *lines, buf = buf.split(b'\n')
            for line in lines:
                yield line.decode('utf-8', 'replace')
        if buf:
            yield buf.decode('utf-8', 'replace')

    def delete_pod(self, name: str) -> None:
        with self._lock:
            self._status[name] = PodStatus('Gone')
            containers = list(self._containers.get(name, []))
        for c in containers:
            try:
                c.remove(force=True)
            except Exception:
                pass
        for vol in self.client.volumes.list(filters={'label': f'localrunner.test-pod={name}'}):
            for _ in range(20):
                try:
                    vol.remove(force=True)
                    break
                except Exception:   # still in use by a container being removed
                    time.sleep(0.2)

    def leftovers(self) -> list[str]:
        found = [c.name for c in self.client.containers.list(all=True, ignore_removed=True, filters={'label': 'localrunner.test-pod'})
                 if c.labels['localrunner.test-pod'] in self.manifests]
        found += [v.name for v in self.client.volumes.list(filters={'label': 'localrunner.test-pod'})
                  if v.attrs['Labels']['localrunner.test-pod'] in self.manifests]
        return found


VERSION = {'major': '1', 'minor': '30', 'gitVersion': 'v1.30.0', 'gitCommit': '0' * 40,
           'gitTreeState': 'clean', 'buildDate': '2024-04-17T17:27:03Z', 'goVersion': 'go1.22.2',
           'compiler': 'gc', 'platform': 'linux/amd64'}


class FakeApiServer:
    """Just enough of the Kubernetes REST API (pods in one namespace, /version) to drive
    KubeClusterApi through the official client: create, read status, follow logs, delete.
    With token='...', a request without `Authorization: Bearer <token>` gets 401."""

    def __init__(self, token: str | None = None):
        import http.server
        import json
        self.pods: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, content_type='application/json'):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _pod(self):
                parts = self.path.split('?')[0].split('/')   # /api/v1/namespaces/NS/pods/NAME[/x]
                return parts[4], (parts[6] if len(parts) > 6 else None), (parts[7] if len(parts) > 7 else None)

            def _refused(self) -> bool:
                if token is None or self.headers.get('Authorization') == f'Bearer {token}':
                    return False
                server.requests.append((self.command, self.path))
                self._send(401, {'kind': 'Status', 'code': 401, 'reason': 'Unauthorized'})
                return True

            def do_POST(self):
                if self._refused():
                    return
                ns, _, _ = self._pod()
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                server.requests.append(('POST', ns))
                server.pods[body['metadata']['name']] = body
                self._send(201, body)

            def do_GET(self):
                if self._refused():
                    return
                if self.path.split('?')[0].rstrip('/') == '/version':     # the client asks /version/
                    server.requests.append(('GET', '/version'))
                    return self._send(200, VERSION)
                ns, name, sub = self._pod()
                server.requests.append(('GET', self.path))
                if name not in server.pods:
                    return self._send(404, {'kind': 'Status', 'code': 404, 'reason': 'NotFound'})
                if sub == 'log':
                    return self._send(200, b'one\ntwo\nthree', 'text/plain')
                pod = dict(server.pods[name])
                pod['status'] = {'phase': 'Succeeded', 'containerStatuses': [{
                    'name': 'main', 'image': 'img', 'imageID': 'docker-pullable://img@sha256:' + 'a' * 64,
                    'ready': False, 'restartCount': 0,
                    'state': {'terminated': {'exitCode': 0, 'reason': 'Completed'}}}]}
                self._send(200, pod)

            def do_DELETE(self):
                if self._refused():
                    return
                ns, name, _ = self._pod()
                server.requests.append(('DELETE', name))
                if server.pods.pop(name, None) is None:
                    return self._send(404, {'kind': 'Status', 'code': 404, 'reason': 'NotFound'})
                self._send(200, {'kind': 'Status', 'status': 'Success'})

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_kubeconfig(path, server: str, context: str = 'test', token: str = 'secret-token') -> str:
    """A one-cluster kubeconfig (current-context set) pointing at `server`; returns its path."""
    import yaml
    data = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
            'clusters': [{'name': 'c1', 'cluster': {'server': server}}],
            'users': [{'name': 'u1', 'user': {'token': token}}],
            'contexts': [{'name': context, 'context': {'cluster': 'c1', 'user': 'u1'}}]}
    with open(path, 'w') as fh:
        yaml.safe_dump(data, fh)
    return str(path)
