using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Cfn.Hosting;

/// <summary>
/// A redis-server child process on loopback with its files in a temporary directory: the Redis of <c>cfn up</c> when it
/// is given none (D2), and the server a test owns when it must kill, restart or read server-wide counters of its Redis.
/// Without persistence it holds nothing worth saving, so stopping it is a kill; with persistence
/// (<c>appendonly yes, appendfsync always</c>) its data survives a kill and a restart on the same port and directory.
/// Disposal kills it and removes its directory. The test projects compile this same file, so there is one of it.
/// <c>cfn up</c>'s server asks for a random password (<c>requirepass</c>, kept in a file of its directory rather than on
/// the command line, where <c>ps</c> would show it), so another local user cannot write to it. Whatever the start, the
/// server that answers on the port must be this child (its <c>INFO server</c> <c>process_id</c>): without that check a
/// redis-server already listening on the port would be used silently while the child fails to bind.
/// </summary>
internal sealed class PrivateRedisServer : IAsyncDisposable
{
    /// <summary>The one line printed when redis-server is missing.</summary>
    public const string MissingMessage = "redis-server is not installed: run `apt-get install -y redis-server` (or pass --redis HOST:PORT)";

    /// <summary>When a free port is chosen, another process may take it before redis-server binds it: tries this many.</summary>
    private const int FreePortAttempts = 5;

    private readonly string _executable;
    private readonly bool _persistent;
    private readonly TimeSpan _startTimeout;
    private Process? _process;

    private PrivateRedisServer(string executable, int port, string directory, bool persistent, TimeSpan startTimeout, string? password)
    {
        _executable = executable;
        Port = port;
        Directory = directory;
        _persistent = persistent;
        _startTimeout = startTimeout;
        Password = password;
    }

    public int Port { get; }

    /// <summary>The <c>requirepass</c> a client must send (AUTH), or null when the server asks for none.</summary>
    public string? Password { get; }

    /// <summary>Its working directory (log, and the append-only file when persistent).</summary>
    public string Directory { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The redis-server process ID while it runs (the bench reads its CPU time through it).</summary>
    public int? ProcessId => IsRunning ? _process!.Id : null;

    /// <summary>
    /// <c>cfn up</c>'s server: redis-server on <paramref name="port"/> (0: a free one), without persistence, with a random
    /// <see cref="Password"/>; waits until it answers.
    /// </summary>
    /// <exception cref="FileNotFoundException">redis-server is not installed (<see cref="MissingMessage"/>).</exception>
    /// <exception cref="InvalidOperationException">
    /// It did not start (the message has its last log lines), or another server already listens on the port (one line naming it).
    /// </exception>
    public static Task<PrivateRedisServer> StartAsync(int port, CancellationToken cancellationToken) =>
        StartAsync(port, persistent: false, TimeSpan.FromSeconds(10), RandomNumberGenerator.GetHexString(32, lowercase: true), cancellationToken);

    /// <summary>
    /// Starts redis-server on a free port and waits until it answers; <paramref name="persistent"/> makes every write
    /// durable before it is acknowledged, so a kill and <see cref="RestartAsync"/> lose nothing.
    /// </summary>
    public static Task<PrivateRedisServer> StartAsync(bool persistent = false) =>
        StartAsync(0, persistent, TimeSpan.FromSeconds(20), password: null, CancellationToken.None);

    private static async Task<PrivateRedisServer> StartAsync(int port, bool persistent, TimeSpan startTimeout, string? password,
        CancellationToken cancellationToken)
    {
        var executable = FindOnPath("redis-server") ?? throw new FileNotFoundException(MissingMessage);
        for (var attempt = 1; ; attempt++)
        {
            var directory = System.IO.Directory.CreateTempSubdirectory("cfn-redis-").FullName;
            var server = new PrivateRedisServer(executable, port > 0 ? port : FreePort(), directory, persistent, startTimeout, password);
            try
            {
                await server.RestartAsync(cancellationToken).ConfigureAwait(false);
                return server;
            }
            catch (InvalidOperationException) when (port == 0 && attempt < FreePortAttempts)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>Starts it (again) on the same port and directory, and waits until it answers PING as this child.</summary>
    /// <exception cref="InvalidOperationException">
    /// It is already running, did not start (the message has its last log lines), or another server listens on the port.
    /// </exception>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("redis-server is already running");
        }

        // The password goes in a file only this user can read: on the command line every local user would see it in ps.
        var config = Path.Combine(Directory, "redis.conf");
        await File.WriteAllTextAsync(config, Password is null ? "" : $"requirepass {Password}\n", cancellationToken).ConfigureAwait(false);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(config, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        var start = new ProcessStartInfo(_executable,
            [config, "--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "",
             "--dir", Directory, "--logfile", Path.Combine(Directory, "redis.log"),
             .. _persistent ? (string[])["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        try
        {
            _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (Win32Exception)
        {
            throw new FileNotFoundException(MissingMessage);
        }

        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < _startTimeout && !_process.HasExited)
        {
            var (answer, stranger) = await ProbeAsync(Port, Password, _process.Id, cancellationToken).ConfigureAwait(false);
            if (answer == Answer.Ready)
            {
                return;
            }

            if (answer == Answer.Stranger)
            {
                Kill();
                throw new InvalidOperationException(PortTaken(stranger!));
            }

            await Task.Delay(25, cancellationToken).ConfigureAwait(false);
        }

        Kill();
        var log = LastLogLines();
        throw new InvalidOperationException(log.Contains("Address already in use", StringComparison.Ordinal)
            ? PortTaken("redis-server: bind: Address already in use")
            : $"redis-server did not start on {Endpoint}: {log}");
    }

    /// <summary>The one line for a port another process holds.</summary>
    private string PortTaken(string detail) =>
        $"port {Port} is taken: another server already listens on {Endpoint} ({detail}); nothing was written to it. " +
        $"Choose another --redis-port, or pass --redis {Endpoint} to use that server";

    /// <summary>Kills the server at once (SIGKILL): an outage, not a shutdown. It can be started again with <see cref="RestartAsync"/>.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process?.Dispose();
        _process = null;
    }

    private enum Answer
    {
        /// <summary>Nothing answers yet (not listening, or loading its data).</summary>
        NotYet,

        /// <summary>This child answers PING.</summary>
        Ready,

        /// <summary>Something else answers on the port.</summary>
        Stranger,
    }

    /// <summary>
    /// Asks whoever listens on <paramref name="port"/> for AUTH (when there is a password), <c>INFO server</c> and PING, and
    /// tells whether it is the child <paramref name="pid"/>, ready. Only reads: a stranger gets no write.
    /// </summary>
    private static async Task<(Answer Answer, string? Stranger)> ProbeAsync(int port, string? password, int pid, CancellationToken cancellationToken)
    {
        var commands = new List<string[]>();
        if (password is not null)
        {
            commands.Add(["AUTH", password]);
        }

        commands.Add(["INFO", "server"]);
        commands.Add(["PING"]);
        List<string> replies = [];
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
            var stream = client.GetStream();
            var request = new StringBuilder();
            foreach (var command in commands)
            {
                request.Append(CultureInfo.InvariantCulture, $"*{command.Length}\r\n");
                foreach (var argument in command)
                {
                    request.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(argument)}\r\n{argument}\r\n");
                }
            }

            await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cancellationToken).ConfigureAwait(false);
            // A server that accepted but never answers must not hold the start past its timeout.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var received = new List<byte>();
            var buffer = new byte[4096];
            while (true)
            {
                var read = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return received.Count == 0 ? (Answer.NotYet, null) : (Answer.Stranger, "it closed the connection mid-answer");
                }

                received.AddRange(buffer.AsSpan(0, read));
                if (Resp.TryParse(received, commands.Count, out replies, out var malformed))
                {
                    break;
                }

                if (malformed)
                {
                    return (Answer.Stranger, "it does not speak the Redis protocol");
                }
            }
        }
        catch (Exception e) when (e is SocketException or IOException ||
                                  (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return (Answer.NotYet, null);
        }

        if (password is not null && replies[0] != "+OK")
        {
            return (Answer.Stranger, $"it refused this run's password: {replies[0][1..]}");
        }

        var info = replies[^2];
        if (info.StartsWith('-'))
        {
            return (Answer.Stranger, $"it answered INFO with {info[1..]}");
        }

        var processId = info.Split('\n').Select(l => l.TrimEnd('\r')).FirstOrDefault(l => l.StartsWith("process_id:", StringComparison.Ordinal));
        if (processId is null || processId != $"process_id:{pid.ToString(CultureInfo.InvariantCulture)}")
        {
            return (Answer.Stranger, processId is null ? "its INFO has no process_id" : $"it is process {processId["process_id:".Length..]}, not the redis-server started here");
        }

        // -LOADING: it is the child, still reading its append-only file.
        return (replies[^1] == "+PONG" ? Answer.Ready : Answer.NotYet, null);
    }

    /// <summary>Just enough of RESP2 to read the probe's replies: simple strings, errors, integers and bulk strings.</summary>
    private static class Resp
    {
        /// <summary>
        /// True when <paramref name="data"/> holds <paramref name="count"/> whole replies (a bulk string's text, or a simple
        /// reply with its sign); <paramref name="malformed"/> when it cannot be RESP.
        /// </summary>
        public static bool TryParse(List<byte> data, int count, out List<string> replies, out bool malformed)
        {
            replies = [];
            malformed = false;
            var text = Encoding.UTF8.GetString(data.ToArray());
            var at = 0;
            while (replies.Count < count)
            {
                var end = text.IndexOf("\r\n", at, StringComparison.Ordinal);
                if (end < 0)
                {
                    malformed = at < text.Length && text[at] is not ('+' or '-' or ':' or '$');
                    return false;
                }

                var line = text[at..end];
                if (line.Length == 0 || line[0] is not ('+' or '-' or ':' or '$'))
                {
                    malformed = true;
                    return false;
                }

                if (line[0] != '$')
                {
                    replies.Add(line);
                    at = end + 2;
                    continue;
                }

                if (!int.TryParse(line.AsSpan(1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var length))
                {
                    malformed = true;
                    return false;
                }

                if (length < 0)
                {
                    replies.Add("");
                    at = end + 2;
                    continue;
                }

                // The length counts bytes; INFO is ASCII, so bytes and characters agree.
                if (text.Length < end + 2 + length + 2)
                {
                    return false;
                }

                replies.Add(text.Substring(end + 2, length));
                at = end + 2 + length + 2;
            }

            return true;
        }
    }

    private string LastLogLines()
    {
        var path = Path.Combine(Directory, "redis.log");
        return File.Exists(path) ? string.Join(" | ", File.ReadLines(path).TakeLast(3)) : "no log";
    }

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public ValueTask DisposeAsync()
    {
        // No persistence worth keeping, so nothing is lost by killing it outright.
        Kill();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temp directory is harmless.
        }

        return ValueTask.CompletedTask;
    }
}
